with source as (
    select * from {{ source('raw', 'weather') }}
),

renamed as (
    select
        origin as airport_code,
        time_hour as observed_hour_at,
        -- Routine reports are made at minute 51 and the hour's precipitation is summed up
        -- to then, so an hour's row is complete, and can be known, only from that minute.
        time_hour + interval 51 minute as reported_at,
        temp as temperature_f,
        dewp as dewpoint_f,
        humid as relative_humidity_pct,
        wind_dir as wind_direction_deg,
        wind_speed as wind_speed_mph,
        wind_gust as wind_gust_mph,
        precip as precipitation_in,
        pressure as pressure_mb,
        visib as visibility_mi
    from source
)

select * from renamed
