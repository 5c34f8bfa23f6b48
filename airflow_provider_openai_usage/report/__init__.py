"""The spend report and spend alerts: read what the pulls landed, draw it, and tell people.

Modules, one job each: ``landed`` finds and reads partitions (Arrow datasets, local or object
store), ``spend`` aggregates them into the numbers a report and the alert rules share, ``charts``
draws them with matplotlib, ``html`` renders the self-contained page, ``alerts`` holds the rule
model and its once-per-period markers, ``publish`` writes a file atomically under the output
location. Heavy imports (pyarrow, matplotlib) stay inside functions: DAG files import the operators
at every parse.
"""
