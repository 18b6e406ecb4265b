import os

from hypothesis import settings

pytest_plugins = ["tests.emulators"]

# Keep boto3 and google-auth away from cloud metadata servers in every test.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:1")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:1")

# CI runs each property test on the same examples every time, so that a
# landing does not depend on luck. Local runs draw new examples and can find
# new bugs.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")
