"""The article pipeline: its steps, their bookkeeping (attempts, deaths, quarantine),
recovery, status and export."""
