# Custom SDK container for Dataflow (and Flink with --environment_type=DOCKER):
# Beam's Python 3.11 SDK image with this package and its pinned requirements,
# so workers start without pip installs.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/kav/kav-pipeline:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/kav/kav-pipeline:0.1.0
#   python -m pipeline ... --runner=DataflowRunner \
#       --sdk_container_image=REGION-docker.pkg.dev/PROJECT/kav/kav-pipeline:0.1.0
#
# The SDK version in the image must equal the one that builds the job
# (apache-beam 2.77.0 in requirements.txt).
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /opt/kav-pipeline

COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY setup.py ./
COPY pipeline/ pipeline/
COPY transforms/ transforms/
RUN pip install --no-cache-dir --no-deps .

# The base image's entry point, /opt/apache/beam/boot, starts the SDK harness.
