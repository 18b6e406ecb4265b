"""kav-pipeline: Kaspersky Security Center exports from FluentD files to Parquet."""
