-- The leads in each status at the end of the last day equal the live leads in that status now,
-- from leads and from leads_history alike (history closes the versions of deleted leads).
with latest as (
    select status, leads_at_end_of_day,
        row_number() over (partition by status order by day desc) as newest_first
    from {{ ref('rackwave__lead_funnel_daily') }}
),

funnel as (
    select status, leads_at_end_of_day from latest where newest_first = 1
),

live as (
    select status, count(*) as leads from {{ ref('stg_rackwave__leads') }}
    where status is not null
    group by status
)

select
    coalesce(funnel.status, live.status) as status,
    funnel.leads_at_end_of_day,
    live.leads
from funnel
full outer join live on funnel.status = live.status
where coalesce(funnel.leads_at_end_of_day, 0) <> coalesce(live.leads, 0)
