{#- A flight with the weather at its origin in its scheduled departure hour (UTC). -#}
with flights as (
    select * from {{ ref('stg_flights') }}
),

weather as (
    select * from {{ ref('stg_weather') }}
),

airlines as (
    select * from {{ ref('stg_airlines') }}
)

select
    flights.flight_id,
    flights.flight_date,
    flights.scheduled_departure_at,
    flights.scheduled_departure_local_hour,
    flights.carrier_code,
    airlines.carrier_name,
    flights.flight_number,
    flights.tail_number,
    flights.origin_airport_code,
    flights.destination_airport_code,
    flights.distance_miles,
    flights.departure_delay_minutes,
    flights.arrival_delay_minutes,
    flights.is_cancelled,
    weather.observed_hour_at is not null as has_departure_weather,
    weather.temperature_f,
    weather.dewpoint_f,
    weather.relative_humidity_pct,
    weather.wind_direction_deg,
    weather.wind_speed_mph,
    weather.wind_gust_mph,
    weather.precipitation_in,
    weather.pressure_mb,
    weather.visibility_mi
from flights
left join weather
    on flights.origin_airport_code = weather.airport_code
    and flights.scheduled_departure_hour_at = weather.observed_hour_at
left join airlines
    on flights.carrier_code = airlines.carrier_code
