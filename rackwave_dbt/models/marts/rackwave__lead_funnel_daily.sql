{#- Leads per status per day (UTC days), one row per day and status that saw a change.

    With history on (leads_history exists, or var rackwave_funnel_source = leads_history) it
    counts real transitions: a lead enters a status on the day a version with that status became
    valid after a version with another status (its first observed version counts as entering);
    it leaves on the day that stretch ended (a change of status, or its deletion).
    Without history only the current state is known: a lead counts as entering its current
    status on the day it was created, and never leaves (funnel_basis tells which one a row is). -#}
-- depends_on: {{ source('rackwave', 'leads_history') }}
{%- set history = rackwave_history_relation() %}

with

{% if history is not none -%}
history_rows as (
    -- a version flagged deleted (deleted_records = "flag") is no status: the lead left
    select
        id,
        case when deleted_at is null then status end as status,
        _dlt_valid_from,
        _dlt_valid_to
    from (
        select id, status, _dlt_valid_from, _dlt_valid_to,
            {{ rackwave_column(history, '_rackwave_deleted_at', 'deleted_at',
                               'timestamp with time zone') }}
        from {{ history }}
    ) as loaded
),

versions as (
    select
        id as lead_id,
        status,
        _dlt_valid_from as valid_from,
        _dlt_valid_to as valid_to,
        lag(status) over (partition by id order by _dlt_valid_from) as previous_status,
        lead(status) over (partition by id order by _dlt_valid_from) as next_status,
        lead(_dlt_valid_from) over (partition by id order by _dlt_valid_from) as next_valid_from
    from history_rows
),

entered as (
    -- the first version of a stretch in one status (a lead's first version included)
    select {{ rackwave_utc_date('valid_from') }} as day, status, count(*) as leads_entered
    from versions
    where status is not null and previous_status is distinct from status
    group by 1, 2
),

exited as (
    -- the last version of a stretch in one status, closed: the status changed or the lead went
    select {{ rackwave_utc_date('valid_to') }} as day, status, count(*) as leads_left
    from versions
    where status is not null and valid_to is not null
      and (next_valid_from is null or next_status is distinct from status)
    group by 1, 2
),

{%- else -%}
entered as (
    select {{ rackwave_utc_date('created_at') }} as day, status, count(*) as leads_entered
    from {{ ref('stg_rackwave__leads') }}
    group by 1, 2
),

exited as (
    select cast(null as date) as day, cast(null as {{ dbt.type_string() }}) as status,
           0 as leads_left
    where 1 = 0
),

{%- endif %}

daily as (
    select
        coalesce(entered.day, exited.day) as day,
        coalesce(entered.status, exited.status) as status,
        cast(coalesce(entered.leads_entered, 0) as {{ dbt.type_bigint() }}) as leads_entered,
        cast(coalesce(exited.leads_left, 0) as {{ dbt.type_bigint() }}) as leads_left
    from entered
    full outer join exited
        on entered.day = exited.day and entered.status = exited.status
)

select
    day,
    status,
    leads_entered,
    leads_left,
    cast(sum(leads_entered - leads_left) over (
        partition by status order by day rows between unbounded preceding and current row
    ) as {{ dbt.type_bigint() }}) as leads_at_end_of_day,
    '{{ "status_history" if history is not none else "current_status_by_created_day" }}'
        as funnel_basis
from daily
