"""Support for backends on psycopg 3 (both first-party backends use it); importing any of
these modules imports psycopg. Public through ``kit_psycopg``."""
