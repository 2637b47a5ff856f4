"""A/B experiments: arms with weights, a goal, exposures and conversions per customer.

``stats`` holds the statistics of the report (intervals, p-values, the probability of
beating control, sample ratio mismatch, a decision that stays valid under continuous
monitoring, Thompson-sampling weights); ``report_html`` draws the report as one
self-contained HTML page; ``allocation`` keeps the weights of ``allocation: thompson``
experiments fresh in the action server (it loads ``stats`` only while one runs).
Importing this package imports nothing else.
"""
