-- rackwave__lead_funnel_daily has one row per day and status.
select day, status, count(*) as rows_for_day_and_status
from {{ ref('rackwave__lead_funnel_daily') }}
group by day, status
having count(*) > 1
