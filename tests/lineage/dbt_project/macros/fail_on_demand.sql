{#- 0 normally; when var fail_model names the model being built, a cast DuckDB refuses at run time
    (Conversion Error), so that one model fails and dbt-ol reports FAIL for it and for the whole run. -#}
{% macro fail_on_demand() -%}
  {%- if var('fail_model', '') == model.name -%}
    cast('fail_model={{ model.name }}' as integer)
  {%- else -%}
    0
  {%- endif -%}
{%- endmacro %}
