"""Arrow schemas of the output: events, dead letters and their partitions.

Every writer and reader in the project takes its columns from here, so the
Parquet files, the tests and the documentation agree on one definition.
`category` and `event_date` are Hive partition columns: they are encoded in
the folder names (`category=security/event_date=2022-02-28/`) and are not
stored again inside the files.
"""

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

MESSAGE_FIELD = pa.struct([("key", pa.string()), ("value", pa.string())])

# Columns stored in each event file, in order.
EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", TIMESTAMP),
        ("source_uri", pa.string()),
        ("source_line", pa.int64()),
        ("fluentd_tag", pa.string()),
        ("syslog_facility", pa.string()),
        ("syslog_severity", pa.string()),
        ("host", pa.string()),
        ("product", pa.string()),
        ("product_version", pa.string()),
        ("event_type", pa.string()),
        ("event_type_name", pa.string()),
        ("component", pa.string()),
        ("subcategory", pa.string()),
        ("severity", pa.string()),
        ("host_name", pa.string()),
        ("host_ip", pa.string()),
        ("group_name", pa.string()),
        ("ksc_server", pa.string()),
        ("threat_name", pa.string()),
        ("threat_type", pa.string()),
        ("result", pa.string()),
        ("result_description", pa.string()),
        ("object_type", pa.string()),
        ("object_name", pa.string()),
        ("object_path", pa.string()),
        ("file_sha256", pa.string()),
        ("file_md5", pa.string()),
        ("url", pa.string()),
        ("url_domain", pa.string()),
        ("process_name", pa.string()),
        ("process_path", pa.string()),
        ("process_pid", pa.int64()),
        ("user_domain", pa.string()),
        ("user_name", pa.string()),
        ("user_role", pa.string()),
        ("network_protocol", pa.string()),
        ("remote_ip", pa.string()),
        ("local_ip", pa.string()),
        ("local_port", pa.int64()),
        ("reason", pa.string()),
        ("bases_release_date", pa.string()),
        ("language", pa.string()),
        ("sd_id", pa.string()),
        ("sd_params", pa.map_(pa.string(), pa.string())),
        ("message_fields", pa.list_(MESSAGE_FIELD)),
        ("extra_fields", pa.map_(pa.string(), pa.string())),
        ("parse_issues", pa.list_(pa.string())),
        ("raw", pa.string()),
    ]
)

EVENT_COLUMNS = tuple(EVENT_SCHEMA.names)

# Columns stored in each dead-letter file under `_errors/`.
DEAD_LETTER_SCHEMA = pa.schema(
    [
        ("source_uri", pa.string()),
        ("source_line", pa.int64()),
        ("error", pa.string()),
        ("detail", pa.string()),
        ("raw", pa.string()),
        ("event_time", TIMESTAMP),
        ("run_id", pa.string()),
    ]
)

DEAD_LETTER_COLUMNS = tuple(DEAD_LETTER_SCHEMA.names)

# Partition columns, as a reader should declare them so that pyarrow does not
# guess their types from the folder names.
EVENT_PARTITIONING = pa.schema([("category", pa.string()), ("event_date", pa.string())])
DEAD_LETTER_PARTITIONING = pa.schema([("event_date", pa.string())])

CATEGORIES = ("security", "general", "unknown")
