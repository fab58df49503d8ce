{#- One row per live lead: the API's fields renamed to dbt conventions. With
    deleted_records = "flag" the loaded table keeps deleted leads (deleted_at set); they are
    left out here (with "delete" the column is always NULL and nothing is left out). -#}
{%- set leads = source('rackwave', 'leads') -%}

select
    id as lead_id,
    {{ rackwave_column(leads, 'name', 'lead_name') }},
    {{ rackwave_column(leads, 'email') }},
    {{ rackwave_column(leads, 'phone') }},
    {{ rackwave_column(leads, 'company', 'company_name') }},
    {{ rackwave_column(leads, 'status') }},
    {{ rackwave_column(leads, 'source', 'lead_source') }},
    {{ rackwave_column(leads, 'tags') }},
    created_at,
    {{ rackwave_column(leads, 'updated_at', data_type='timestamp with time zone') }},
    _dlt_load_id as dlt_load_id
from {{ leads }}
where _rackwave_deleted_at is null
