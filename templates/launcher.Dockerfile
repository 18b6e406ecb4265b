# Launcher image of the Dataflow Flex Template in kav-pipeline-metadata.json.
# The launcher runs `python -m pipeline` with the template's parameters to
# build the job graph, then Dataflow runs the job on the SDK container given
# by --sdk_container_image (the image of ../Dockerfile).
#
#   docker build -f templates/launcher.Dockerfile \
#       -t REGION-docker.pkg.dev/PROJECT/kav/kav-pipeline-launcher:0.1.0 .
#   gcloud dataflow flex-template build gs://BUCKET/templates/kav-pipeline.json \
#       --image=REGION-docker.pkg.dev/PROJECT/kav/kav-pipeline-launcher:0.1.0 \
#       --sdk-language=PYTHON \
#       --metadata-file=templates/kav-pipeline-metadata.json
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base

WORKDIR /template

COPY requirements.txt setup.py ./
COPY pipeline/ pipeline/
COPY transforms/ transforms/
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps .

# The launcher runs this file with the template parameters as --name=value
# flags, and it passes them to the same CLI as a local run. It lives outside
# pipeline/ so that the package's modules (options.py, storage.py, ...) do not
# shadow top-level modules of the same names on sys.path.
RUN printf 'import sys\n\nfrom pipeline.cli import main\n\nsys.exit(main())\n' \
    > /template/main.py
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py
ENV FLEX_TEMPLATE_PYTHON_SETUP_FILE=/template/setup.py
