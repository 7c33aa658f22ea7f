with source as (
    select * from {{ source('raw', 'flights') }}
),

renamed as (
    select
        md5(concat_ws('|', year, month, day, carrier, flight, origin, sched_dep_time)) as flight_id,
        make_date(year, month, day) as flight_date,
        carrier as carrier_code,
        flight as flight_number,
        tailnum as tail_number,
        origin as origin_airport_code,
        dest as destination_airport_code,
        -- time_hour is the scheduled departure hour in UTC; minute completes it.
        time_hour + to_minutes(minute) as scheduled_departure_at,
        time_hour as scheduled_departure_hour_at,
        hour as scheduled_departure_local_hour,
        sched_dep_time as scheduled_departure_local_hhmm,
        sched_arr_time as scheduled_arrival_local_hhmm,
        dep_time as actual_departure_local_hhmm,
        arr_time as actual_arrival_local_hhmm,
        dep_delay as departure_delay_minutes,
        arr_delay as arrival_delay_minutes,
        air_time as air_time_minutes,
        distance as distance_miles,
        dep_time is null as is_cancelled
    from source
)

select * from renamed
