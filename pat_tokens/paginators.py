"""A paginator for admin change lists over tables too large to count on every page view."""

import json

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Paginate a queryset without counting more than ``exact_count_limit`` of its rows.

    The count is found in up to three steps:

    1. Count at most ``exact_count_limit + 1`` rows: ``SELECT COUNT(*)`` over an unordered
       subquery with ``LIMIT``, which stops after that many matching rows. When it finds no
       more rows than the limit, it is the exact count.
    2. When the queryset is the whole table (no ``WHERE`` clause), use the query planner's row
       estimate (``EXPLAIN``) on MySQL, MariaDB and PostgreSQL, if it is above the limit.
       ``count_is_estimate`` is then ``True``.
    3. Otherwise (a filter or search matching more rows than the limit, SQLite, or an estimate
       below the limit) the count is the limit itself and ``count_is_lower_bound`` is ``True``.

    Page links follow the count, so rows beyond an estimate that is too low, or beyond the limit
    in step 3, sit on pages without a link. Sorting the other way reaches them.
    """

    exact_count_limit = 10_000
    count_is_estimate = False
    count_is_lower_bound = False

    @cached_property
    def count(self):
        queryset = self.object_list
        if not hasattr(queryset, "query"):
            return super().count

        bounded = queryset.order_by()[: self.exact_count_limit + 1].count()
        if bounded <= self.exact_count_limit:
            return bounded

        if _is_whole_table(queryset):
            estimate = estimate_row_count(queryset.model, queryset.db)
            if estimate is not None and estimate > self.exact_count_limit:
                self.count_is_estimate = True
                return estimate

        self.count_is_lower_bound = True
        return self.exact_count_limit


def _is_whole_table(queryset):
    query = queryset.query
    return (
        not query.where
        and not query.distinct
        and not query.combinator
        and query.low_mark == 0
        and query.high_mark is None
    )


def estimate_row_count(model, using):
    """Return the query planner's estimate of the rows in ``model``'s table, or ``None``.

    The planner's figure comes from the table statistics kept by InnoDB and by PostgreSQL's
    ``ANALYZE``/autovacuum, so it costs no scan. ``None`` means the database has no estimate
    (SQLite and other backends).
    """
    connection = connections[using]
    table = connection.ops.quote_name(model._meta.db_table)

    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN SELECT * FROM {table}")  # noqa: S608 (quoted model table)
            columns = [column[0].lower() for column in cursor.description]
            row = cursor.fetchone()
        if row is None or row[columns.index("rows")] is None:
            return None
        return int(row[columns.index("rows")])

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT * FROM {table}")  # noqa: S608
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    return None
