{#- Helpers of the rackwave project, portable between DuckDB and Postgres. -#}

{% macro rackwave_utc_date(column) -%}
    {#- The UTC calendar day of a timestamp with time zone, whatever the session's time zone. -#}
    cast(({{ column }} at time zone 'UTC') as date)
{%- endmacro %}


{% macro rackwave_column(relation, name, alias=none, data_type=none) -%}
    {#- A column that may be missing from the loaded table (exclude_columns drops columns; a
        field the API stops sending never appears in a new warehouse): the column when the table
        has it, else a typed NULL, so the model keeps its shape. -#}
    {%- set alias = alias or name -%}
    {%- if execute -%}
        {%- set present = adapter.get_columns_in_relation(relation)
                          | map(attribute='name') | map('lower') | list -%}
        {%- if name | lower not in present -%}
            cast(null as {{ data_type or dbt.type_string() }}) as {{ alias }}
        {%- else -%}
            {{ adapter.quote(name) }} as {{ alias }}
        {%- endif -%}
    {%- else -%}
        {{ name }} as {{ alias }}
    {%- endif -%}
{%- endmacro %}


{% macro rackwave_history_relation() -%}
    {#- leads_history when the funnel should read it (var rackwave_funnel_source), else none. -#}
    {%- set choice = var('rackwave_funnel_source', 'auto') -%}
    {%- if choice not in ('auto', 'leads', 'leads_history') -%}
        {{ exceptions.raise_compiler_error(
            "var rackwave_funnel_source is '" ~ choice ~ "': use auto, leads or leads_history") }}
    {%- endif -%}
    {%- set leads = source('rackwave', 'leads') -%}
    {%- if not execute or choice == 'leads' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set history = adapter.get_relation(database=leads.database, schema=leads.schema,
                                           identifier='leads_history') -%}
    {%- if history is none and choice == 'leads_history' -%}
        {{ exceptions.raise_compiler_error(
            "rackwave_funnel_source is leads_history but " ~ leads.schema ~ ".leads_history "
            ~ "does not exist: turn history on (SOURCES__RACKWAVE__HISTORY=scd2) and load "
            ~ "again, or use rackwave_funnel_source: auto") }}
    {%- endif -%}
    {{ return(history) }}
{%- endmacro %}
