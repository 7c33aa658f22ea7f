{#-
  One row per scheduled flight with the keys features join on and its labels.
  Schedules are published well ahead; `schedule_known_at` (a week before departure) is
  when calendar features about the flight may be used.
-#}
select
    flight_id,
    carrier_code,
    origin_airport_code,
    destination_airport_code,
    origin_airport_code || '-' || destination_airport_code as route,
    coalesce(tail_number, 'UNKNOWN') as tail_number,
    scheduled_departure_at,
    scheduled_departure_at - interval 7 day as schedule_known_at,
    distance_miles,
    is_cancelled,
    departure_delay_minutes,
    case when departure_delay_minutes is null then null
         else (departure_delay_minutes >= 15)::int end as is_delayed,
    -- Minutes late at the destination; null when the flight was cancelled or diverted.
    arrival_delay_minutes
from {{ ref('stg_flights') }}
