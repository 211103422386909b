-- Orders from an inline select (no seed: seeds emit no OpenLineage events and cost a step).
select order_id, customer_id, cast(order_date as date) as order_date, amount
from (
    values
        (1, 1, '2026-01-01', 10.0),
        (2, 1, '2026-01-02', 20.0),
        (3, 2, '2026-01-02', 5.5),
        (4, 3, '2026-01-03', 7.25)
) as t (order_id, customer_id, order_date, amount)
where {{ fail_on_demand() }} = 0
