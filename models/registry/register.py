#!/usr/bin/env python3
"""Publish a Vigil model package to an MLflow model registry, the data scientist's side.

    python register.py --tracking-uri http://mlflow:5000 --name defect-detector \
        --package ../defect/packages/defect-int8-onnx --alias challenger --sign-key private.pem
    python register.py --keygen keys/

Uploads the package folder (vigil.json, the model file, optionally vigil.json.sig) as the
artifacts of an MLflow run, registers a model version from them, waits until the registry says
READY, points the alias at it and prints the version number on stdout (messages go to stderr).
Gateways following that alias pull, verify, shadow-test and promote the version on their own.

Credentials come from MLflow's usual environment variables: MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

MANIFEST = "vigil.json"
SIGNATURE = "vigil.json.sig"


def say(message: str) -> None:
    print(f"register.py: {message}", file=sys.stderr)


def keygen(folder: Path) -> None:
    """Writes an ed25519 key pair: private.pem (PKCS#8, keep it secret) and public.pem (SPKI)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = folder / "private.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    (folder / "public.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    say(f"wrote {private} (keep it secret) and {folder / 'public.pem'} (give it to the gateways)")


def sign(package: Path, key_file: Path) -> None:
    """vigil.json.sig: base64 of the ed25519 signature over the exact bytes of vigil.json."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        sys.exit(f"register.py: {key_file} is not an ed25519 private key (make one with --keygen)")
    signature = key.sign((package / MANIFEST).read_bytes())
    (package / SIGNATURE).write_text(base64.b64encode(signature).decode("ascii") + "\n")


def register(args: argparse.Namespace) -> str:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    package = Path(args.package)
    if not (package / MANIFEST).is_file():
        sys.exit(f"register.py: {package} has no {MANIFEST}; is it a Vigil model package folder?")
    tags = dict(tag.split("=", 1) for tag in args.tag)
    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)

    experiment = client.get_experiment_by_name(args.experiment)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(args.experiment)
    )
    run = client.create_run(experiment_id, run_name=f"{args.name} package")
    with tempfile.TemporaryDirectory() as tmp:
        # Sign a copy, so that the engineer's package folder stays as it was built.
        staged = Path(tmp) / "package"
        shutil.copytree(package, staged)
        if args.sign_key:
            sign(staged, Path(args.sign_key))
        client.log_artifacts(run.info.run_id, str(staged), artifact_path="package")
    client.set_terminated(run.info.run_id)
    say(f"uploaded {package} to run {run.info.run_id}")

    try:
        client.create_registered_model(args.name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(
        args.name,
        source=f"{run.info.artifact_uri}/package",
        run_id=run.info.run_id,
        tags=tags,
    )
    deadline = time.monotonic() + args.wait_seconds
    while version.status != "READY":
        if version.status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            sys.exit(f"register.py: version {version.version} is {version.status}: {version.status_message}")
        time.sleep(1)
        version = client.get_model_version(args.name, version.version)

    if args.alias:
        client.set_registered_model_alias(args.name, args.alias, version.version)
        say(f"{args.name}@{args.alias} -> version {version.version}")
    return version.version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keygen", metavar="DIR", help="write an ed25519 key pair into DIR and exit")
    parser.add_argument("--tracking-uri", help="MLflow tracking server, e.g. http://mlflow:5000")
    parser.add_argument("--name", help="registered model name")
    parser.add_argument("--package", help="Vigil model package folder (holds vigil.json)")
    parser.add_argument("--alias", help="alias to point at the new version, e.g. challenger")
    parser.add_argument("--sign-key", metavar="KEY.pem", help="ed25519 private key: sign vigil.json")
    parser.add_argument("--tag", action="append", default=[], metavar="K=V", help="model version tag")
    parser.add_argument("--experiment", default="vigil-models", help="experiment holding the runs")
    parser.add_argument("--wait-seconds", type=float, default=300, help="how long to wait for READY")
    args = parser.parse_args()

    if args.keygen:
        keygen(Path(args.keygen))
        return
    missing = [flag for flag in ("tracking_uri", "name", "package") if not getattr(args, flag)]
    if missing:
        parser.error("needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
    if any("=" not in tag for tag in args.tag):
        parser.error("--tag takes key=value")
    # MLflow prints links to its UI on stdout; keep stdout for the version alone.
    with contextlib.redirect_stdout(sys.stderr):
        version = register(args)
    print(version)


if __name__ == "__main__":
    main()
