"""Analytics: aggregations of usage for dashboards (read side, fed by events).

Other contexts may import only this package's ``api`` and ``events`` modules.
"""
