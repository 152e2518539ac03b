//! INFO: the report of every section (to be written).
