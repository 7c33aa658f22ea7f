with source as (
    select * from {{ source('raw', 'airports') }}
),

renamed as (
    select
        faa as airport_code,
        name as airport_name,
        lat as latitude,
        lon as longitude,
        alt as altitude_ft,
        tz as utc_offset_hours,
        dst as daylight_saving_rule,
        tzone as time_zone
    from source
)

select * from renamed
