select
    customer_id,
    count(*) as order_count,
    sum(amount) as lifetime_value,
    min(order_date) as first_order,
    max(order_date) as last_order
from {{ ref('orders') }}
where {{ fail_on_demand() }} = 0
group by customer_id
