"""Package of kav-pipeline, also used by Dataflow workers through --setup_file."""

import setuptools

setuptools.setup(
    name="kav-pipeline",
    version="0.1.0",
    description=(
        "Kaspersky Security Center syslog exports from FluentD files to "
        "classified, deduplicated, Hive-partitioned Parquet"
    ),
    python_requires=">=3.10",
    packages=["pipeline", "transforms"],
    package_data={"transforms": ["data/*.csv"]},
    include_package_data=True,
    install_requires=[
        "apache-beam[gcp,aws,azure]==2.77.0",
        "pyarrow==25.0.1",
        "orjson==3.13.0",
        "zstandard==0.25.0",
    ],
)
