{#- One row per live contact, renamed to dbt conventions; deleted contacts kept by
    deleted_records = "flag" are left out (see stg_rackwave__leads). -#}
{%- set contacts = source('rackwave', 'contacts') -%}

select
    id as contact_id,
    {{ rackwave_column(contacts, 'lead_id') }},
    {{ rackwave_column(contacts, 'first_name') }},
    {{ rackwave_column(contacts, 'last_name') }},
    {{ rackwave_column(contacts, 'email') }},
    {{ rackwave_column(contacts, 'phone') }},
    {{ rackwave_column(contacts, 'company', 'company_name') }},
    {{ rackwave_column(contacts, 'title', 'job_title') }},
    {{ rackwave_column(contacts, 'tags') }},
    {{ rackwave_column(contacts, 'address__street', 'address_street') }},
    {{ rackwave_column(contacts, 'address__city', 'address_city') }},
    {{ rackwave_column(contacts, 'address__postcode', 'address_postcode') }},
    {{ rackwave_column(contacts, 'address__country', 'address_country_code') }},
    created_at,
    {{ rackwave_column(contacts, 'updated_at', data_type='timestamp with time zone') }},
    _dlt_load_id as dlt_load_id
from {{ contacts }}
where _rackwave_deleted_at is null
