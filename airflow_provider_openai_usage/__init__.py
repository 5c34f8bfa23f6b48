"""Apache Airflow provider for OpenAI's organization Usage and Costs API.

Kept import-light on purpose: DAG files import from here at every parse.
"""

__version__ = "0.1.0"
