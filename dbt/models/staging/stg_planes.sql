with source as (
    select * from {{ source('raw', 'planes') }}
),

renamed as (
    select
        tailnum as tail_number,
        year as year_built,
        type as aircraft_type,
        manufacturer,
        model as aircraft_model,
        engines as engine_count,
        seats as seat_count,
        speed as cruise_speed_mph,
        engine as engine_type
    from source
)

select * from renamed
