{#-
  Each flight that departed, with its delay as known from the moment it left.
  History features read only this table, so a flight's outcome can only be used
  by rows later than its actual departure.
-#}
select
    flight_id,
    carrier_code,
    origin_airport_code,
    route,
    tail_number,
    scheduled_departure_at + to_minutes(departure_delay_minutes) as departed_at,
    departure_delay_minutes,
    is_delayed
from {{ ref('flight_schedule') }}
where not is_cancelled
