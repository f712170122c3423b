#!/usr/bin/env bash
# Validate, scan, test, package and deploy Recovery Instance Sync.
#
# Usage: scripts/deploy.sh ENV [options]
#
#   ENV                 environment name (dev, test, prod, ...): the Environment parameter
#   --lambda-only       build and upload the package, then update the four functions' code (and
#                       publish the layer) without touching the stack
#   --dry-run           everything except calls to AWS (lint, tests, build of the package and the
#                       layer); prints the AWS commands it would run; needs no credentials
#   --skip-tests        do not run `make test`
#   --skip-lint         do not run scripts/lint-cfn.sh (cfn-lint + checkov)
#   --code-key KEY      deploy an already uploaded package (rollback) instead of building one
#   --param KEY=VALUE   extra CloudFormation parameter override (repeatable)
#   --region REGION     AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the CLI profile's)
#   -h, --help          this text
#
# Environment:
#   PROJECT_NAME        ProjectName parameter (default drs-orchestration)
#   STACK_NAME          default ${PROJECT_NAME}-recovery-instance-sync-${ENV}
#   DEPLOY_BUCKET       artifact bucket (default ${PROJECT_NAME}-deploy-<account>-<region>,
#                       created, private and encrypted, on first deploy)
#   LAMBDA_ARCH         arm64 (default) or x86_64: the functions' architecture and the wheels'
#   BUILD_DIR           where the package and the layer are built (default build/)
#   LAYER_NAME          the Lambda layer of recovery_instance_sync (default
#                       ${PROJECT_NAME}-recovery-instance-sync-${ENVIRONMENT}); a real run publishes
#                       a version of it (lambda publish-layer-version) and prints its ARN
#   LAMBDA_PYTHON_VERSION  Python the wheels are chosen for (default 3.12, the functions' runtime;
#                       tests build for their own interpreter with the same lock and steps); the
#                       package holds bytecode only when the build interpreter is this version
#
# The package's dependencies come from requirements-lambda.lock (hash-locked, `make lock`) and are
# installed once per build, for both the function package and the layer (python/: the drop-in
# module recovery_instance_sync.py, syncengine/, handlers/ and the same dependencies); the
# packaged templates are built locally (no `cloudformation package`), so every S3 call names the
# expected bucket owner. A dry run drops the shell's AWS credentials: it never needs them.
#   NOTIFICATION_EMAIL, API_AUTH_TYPE, COGNITO_USER_POOL_ARN, CORS_ALLOW_ORIGIN: parameters
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "deploy: error: $*" >&2; exit 1; }
step() { echo; echo "==> $*"; }

ENVIRONMENT=""
LAMBDA_ONLY=false
DRY_RUN=false
SKIP_TESTS=false
SKIP_LINT=false
CODE_KEY=""
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
EXTRA_PARAMS=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --lambda-only) LAMBDA_ONLY=true ;;
        --dry-run) DRY_RUN=true ;;
        --skip-tests) SKIP_TESTS=true ;;
        --skip-lint) SKIP_LINT=true ;;
        --code-key) [[ $# -ge 2 ]] || die "--code-key needs a value"; CODE_KEY="$2"; shift ;;
        --param) [[ $# -ge 2 && "$2" == *=* ]] || die "--param needs KEY=VALUE"; EXTRA_PARAMS+=("$2"); shift ;;
        --region) [[ $# -ge 2 ]] || die "--region needs a value"; REGION="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) [[ -z "$ENVIRONMENT" ]] || die "one environment only, got '$ENVIRONMENT' and '$1'"; ENVIRONMENT="$1" ;;
    esac
    shift
done

[[ -n "$ENVIRONMENT" ]] || { usage >&2; die "ENV is required"; }
[[ "$ENVIRONMENT" =~ ^[a-z0-9-]{1,12}$ ]] || die "ENV must match ^[a-z0-9-]{1,12}\$ (the template's constraint), got '$ENVIRONMENT'"

PROJECT_NAME="${PROJECT_NAME:-drs-orchestration}"
[[ "$PROJECT_NAME" =~ ^[a-z0-9][a-z0-9-]{1,27}$ ]] || die "PROJECT_NAME must match ^[a-z0-9][a-z0-9-]{1,27}\$, got '$PROJECT_NAME'"
STACK_NAME="${STACK_NAME:-${PROJECT_NAME}-recovery-instance-sync-${ENVIRONMENT}}"
LAMBDA_ARCH="${LAMBDA_ARCH:-arm64}"
case "$LAMBDA_ARCH" in
    arm64) WHEEL_ARCH=aarch64 ;;
    x86_64) WHEEL_ARCH=x86_64 ;;
    *) die "LAMBDA_ARCH must be arm64 or x86_64, got '$LAMBDA_ARCH'" ;;
esac
if [[ -n "$CODE_KEY" && "$CODE_KEY" =~ -(arm64|x86_64)\.zip$ && "${BASH_REMATCH[1]}" != "$LAMBDA_ARCH" ]]; then
    die "--code-key $CODE_KEY was built for ${BASH_REMATCH[1]}, but LAMBDA_ARCH is $LAMBDA_ARCH"
fi
# Beside the orchestration the layer runs in its functions, which declare no architecture (x86_64):
# native wheels built for arm64 would not load there.
for param in "${EXTRA_PARAMS[@]+"${EXTRA_PARAMS[@]}"}"; do
    if [[ "$param" == "OrchestrationMode=beside" && "$LAMBDA_ARCH" != "x86_64" ]]; then
        echo "deploy: WARNING: OrchestrationMode=beside with LAMBDA_ARCH=$LAMBDA_ARCH: the orchestration's functions" >&2
        echo "deploy: WARNING: run on x86_64 unless you changed them; build with LAMBDA_ARCH=x86_64 for its layer." >&2
    fi
done
LAMBDA_PYTHON_VERSION="${LAMBDA_PYTHON_VERSION:-3.12}"
[[ "$LAMBDA_PYTHON_VERSION" =~ ^3\.[0-9]+$ ]] || die "LAMBDA_PYTHON_VERSION must look like 3.12, got '$LAMBDA_PYTHON_VERSION'"
LAMBDA_LOCK=requirements-lambda.lock
BUILD_DIR="${BUILD_DIR:-build}"
LAYER_NAME="${LAYER_NAME:-${PROJECT_NAME}-recovery-instance-sync-${ENVIRONMENT}}"
[[ "$LAYER_NAME" =~ ^[A-Za-z0-9_-]{1,140}$ ]] || die "LAYER_NAME must match ^[A-Za-z0-9_-]{1,140}\$, got '$LAYER_NAME'"
if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY="${PYTHON:-python3}"; fi

# Every AWS call goes through `aws_cmd`: printed in a dry run, run otherwise.
aws_cmd() {
    if $DRY_RUN; then
        printf '+ aws'; printf ' %q' "$@"; printf '\n'
    else
        aws "$@"
    fi
}

# ------------------------------------------------------------------------------------------
# 1. AWS access first: a real deploy without credentials fails before minutes of building.
ACCOUNT_ID="ACCOUNT_ID"
if $DRY_RUN; then
    REGION="${REGION:-us-east-1}"
    # Whatever the shell holds (nothing, empty variables, real keys or a profile), nothing in a
    # dry run may use it: tests, lint and the build run without any AWS credential.
    while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^AWS_' || true)
    echo "deploy: dry run: no AWS call is made; AWS commands are printed with a leading +"
else
    command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is not installed; it is needed for a real deploy (try --dry-run)"
    if [[ -z "$REGION" ]]; then
        REGION="$(aws configure get region 2>/dev/null || true)"
    fi
    [[ -n "$REGION" ]] || die "no AWS region: set AWS_REGION or pass --region"
    if ! ACCOUNT_ID="$(aws sts get-caller-identity --region "$REGION" --query Account --output text 2>/tmp/deploy-sts-$$.err)"; then
        cat "/tmp/deploy-sts-$$.err" >&2 || true
        rm -f "/tmp/deploy-sts-$$.err"
        die "no usable AWS credentials (aws sts get-caller-identity failed). Configure a profile (AWS_PROFILE), SSO login, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; or use --dry-run"
    fi
    rm -f "/tmp/deploy-sts-$$.err"
fi
DEPLOY_BUCKET="${DEPLOY_BUCKET:-${PROJECT_NAME}-deploy-${ACCOUNT_ID}-${REGION}}"
echo "deploy: stack $STACK_NAME, environment $ENVIRONMENT, region $REGION, account $ACCOUNT_ID, architecture $LAMBDA_ARCH"

# ------------------------------------------------------------------------------------------
# 2. Templates: cfn-lint and checkov, zero findings.
if $SKIP_LINT; then
    step "lint: skipped (--skip-lint)"
else
    step "lint: cfn-lint + checkov"
    bash scripts/lint-cfn.sh
fi

# 3. Tests.
if $SKIP_TESTS; then
    step "tests: skipped (--skip-tests)"
else
    step "tests: make test"
    make test
fi

# Lambda's code directory (/var/task) is read-only: a package without bytecode compiles every
# module it imports on every cold start (measured: `import handlers.query` ~1.45 s without .pyc,
# ~0.45 s with). Bytecode is specific to one Python version (its magic number), so it is
# compiled only by an interpreter of the runtime's own version; any other build skips it, loudly.
# `unchecked-hash` pycs are never compared with their source (an mtime-based pyc would be, and
# the zip's fixed timestamps would not match it); PYTHONHASHSEED=0 and the stripped build path
# make them the same bytes on every build, so the zip's SHA-256 stays reproducible.
compile_bytecode() {
    local package_dir="$1" runtime_path="$2" build_version
    build_version="$("$PY" -c 'import sys; print(f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}")')"
    if [[ "$build_version" != "cpython-$LAMBDA_PYTHON_VERSION" ]]; then
        {
            echo "build: WARNING: NO BYTECODE in the package: the build interpreter is $build_version,"
            echo "build: WARNING: the runtime is cpython-$LAMBDA_PYTHON_VERSION; every cold start will compile"
            echo "build: WARNING: each module it imports (about 1 s more). Build with Python $LAMBDA_PYTHON_VERSION."
        } >&2
        return 0
    fi
    if ! PYTHONHASHSEED=0 "$PY" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
        -s "$package_dir" -p "$runtime_path" "$package_dir" >"$BUILD_DIR/compileall.log" 2>&1; then
        cat "$BUILD_DIR/compileall.log" >&2
        die "compileall failed on the package (a source file the runtime cannot compile)"
    fi
    echo "build: bytecode for cpython-$LAMBDA_PYTHON_VERSION: $(find "$package_dir" -name '*.pyc' | wc -l) modules (unchecked-hash, $runtime_path)"
}

# ------------------------------------------------------------------------------------------
# 4. The Lambda package and the layer. The runtime dependencies of pyproject.toml (not the dev
#    extras) are installed once, as manylinux wheels for the Lambda architecture and Python, and
#    copied into both: the function package (syncengine/ and handlers/ at the zip root, read from
#    /var/task) and the layer (python/ holding recovery_instance_sync.py, syncengine/ and handlers/, read from
#    /opt/python by the orchestration's functions). Both deterministic (sorted entries, fixed
#    timestamps): the same sources give the same SHA-256, hence the same S3 key.
install_runtime_dependencies() {
    DEPENDENCIES_DIR="$BUILD_DIR/runtime-dependencies-$LAMBDA_ARCH"
    local requirements="$BUILD_DIR/requirements-lambda.txt"
    rm -rf "$DEPENDENCIES_DIR"
    mkdir -p "$DEPENDENCIES_DIR"

    # The lock must be the one the tests ran against: regenerated from the dev lock, nothing else.
    "$PY" scripts/lambda_lock.py --check || die "$LAMBDA_LOCK is stale: run \`make lock\` and commit it"
    cp "$LAMBDA_LOCK" "$requirements"
    echo "runtime dependencies: $(grep -c '==' "$requirements") pinned with hashes ($LAMBDA_LOCK)"

    # Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): manylinux2014 (glibc 2.17)
    # wheels and manylinux_2_28 ones both load there.
    local pip_log="$BUILD_DIR/pip-lambda.log"
    if ! "$PY" -m pip install \
        --quiet --disable-pip-version-check --no-compile \
        --platform "manylinux2014_${WHEEL_ARCH}" \
        --platform "manylinux_2_28_${WHEEL_ARCH}" \
        --implementation cp \
        --python-version "$LAMBDA_PYTHON_VERSION" \
        --only-binary=:all: \
        --require-hashes \
        --target "$DEPENDENCIES_DIR" \
        -r "$requirements" 2>"$pip_log"; then
        cat "$pip_log" >&2
        die "pip could not download the runtime dependencies for manylinux/$WHEEL_ARCH (network, or a dependency without a binary wheel)"
    fi
    # Keep what pip had to say, minus its notes about unreadable extra index locations.
    grep -v "^WARNING: Location '.*' is ignored" "$pip_log" >&2 || true
    # Console scripts are of no use in Lambda.
    rm -rf "$DEPENDENCIES_DIR/bin"
}

# Exactly the lock: every distribution in a directory is pinned there at the same version.
check_against_lock() {
    "$PY" - "$1" "$LAMBDA_LOCK" <<'PYEOF' || die "$1 does not match $LAMBDA_LOCK"
import pathlib
import re
import sys

from packaging.utils import canonicalize_name

package, lock = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text(encoding="utf-8")
pinned = {canonicalize_name(n): v for n, v in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.M)}
installed = {}
for dist_info in package.glob("*.dist-info"):
    fields = dict(
        line.split(": ", 1) for line in (dist_info / "METADATA").read_text(encoding="utf-8").splitlines()
        if ": " in line and not line.startswith(" ")
    )
    installed[canonicalize_name(fields["Name"])] = fields["Version"]
if installed != pinned:
    extra = {n: v for n, v in installed.items() if pinned.get(n) != v}
    missing = {n: v for n, v in pinned.items() if installed.get(n) != v}
    sys.exit(f"not in the lock: {extra}; lock entries not installed: {missing}")
print(f"{package}: {len(installed)} distributions, each at its locked version")
PYEOF
}

# Our sources' own caches go: the bytecode is compiled for the runtime's Python only.
remove_stray_bytecode() {
    find "$1" -name '__pycache__' -type d -prune -exec rm -rf {} +
    find "$1" -name '*.pyc' -delete
}

# A deterministic zip of a directory, and its SHA-256 beside it (ZIP.sha256).
zip_directory() {
    "$PY" - "$1" "$2" <<'PYEOF'
import hashlib
import os
import sys
import zipfile

source, target = sys.argv[1], sys.argv[2]
# Lambda's limit on the unzipped package (function code plus layers).
UNZIPPED_LIMIT = 250 * 1024 * 1024
total = 0
entries = []
for directory, subdirectories, files in os.walk(source):
    subdirectories.sort()
    for name in sorted(files):
        path = os.path.join(directory, name)
        entries.append((os.path.relpath(path, source).replace(os.sep, "/"), path))
with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
    for arcname, path in entries:
        info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        info.external_attr = (0o100000 | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(path, "rb") as stream:
            data = stream.read()
        total += len(data)
        archive.writestr(info, data)
if total > UNZIPPED_LIMIT:
    sys.exit(f"{target} unzips to {total / 2**20:.1f} MiB, over Lambda's 250 MiB limit")
digest = hashlib.sha256(open(target, "rb").read()).hexdigest()
print(f"zip: {target}: {len(entries)} files, {os.path.getsize(target) / 2**20:.1f} MiB zipped, "
      f"{total / 2**20:.1f} MiB unzipped, sha256 {digest}")
with open(target + ".sha256", "w", encoding="utf-8") as out:
    out.write(digest + "\n")
PYEOF
}

build_package() {
    local package_dir="$BUILD_DIR/lambda-package-$LAMBDA_ARCH"
    ZIP_PATH="$BUILD_DIR/lambda-$LAMBDA_ARCH.zip"

    step "build: $ZIP_PATH (the functions' package)"
    rm -rf "$package_dir" "$ZIP_PATH"
    cp -R "$DEPENDENCIES_DIR" "$package_dir"
    # The product is syncengine/ + handlers/ and nothing else: dev tools (simulator, fault proxy,
    # embedded DynamoDB, seeding, demo) live in devtools/, which the product never imports.
    cp -R syncengine "$package_dir/syncengine"
    if [[ -d handlers ]]; then
        cp -R handlers "$package_dir/handlers"
    else
        echo "build: warning: handlers/ does not exist yet; the package has no Lambda entry points" >&2
    fi
    remove_stray_bytecode "$package_dir"
    compile_bytecode "$package_dir" /var/task
    check_against_lock "$package_dir"
    zip_directory "$package_dir" "$ZIP_PATH"
    CODE_SHA256="$(cat "$ZIP_PATH.sha256")"
    CODE_KEY="lambda/${PROJECT_NAME}/${ENVIRONMENT}/${CODE_SHA256}-${LAMBDA_ARCH}.zip"
}

# The layer the orchestration's functions attach: Lambda puts a layer's python/ on sys.path
# (/opt/python), so `import recovery_instance_sync` finds the drop-in module, its engine and the
# operations behind our routes (handlers/) there.
build_layer() {
    local layer_dir="$BUILD_DIR/layer-$LAMBDA_ARCH"
    LAYER_ZIP="$BUILD_DIR/recovery-instance-sync-layer.zip"

    step "build: $LAYER_ZIP (the recovery_instance_sync layer)"
    rm -rf "$layer_dir" "$LAYER_ZIP"
    mkdir -p "$layer_dir"
    cp -R "$DEPENDENCIES_DIR" "$layer_dir/python"
    cp -R syncengine "$layer_dir/python/syncengine"
    # The drop-in answers through the operations our own routes use (handlers/operations.py).
    cp -R handlers "$layer_dir/python/handlers"
    cp recovery_instance_sync.py "$layer_dir/python/recovery_instance_sync.py"
    remove_stray_bytecode "$layer_dir"
    compile_bytecode "$layer_dir/python" /opt/python
    check_against_lock "$layer_dir/python"
    zip_directory "$layer_dir" "$LAYER_ZIP"
    LAYER_SHA256="$(cat "$LAYER_ZIP.sha256")"
    LAYER_KEY="layers/${PROJECT_NAME}/${ENVIRONMENT}/${LAYER_SHA256}-${LAMBDA_ARCH}.zip"
}

# The packaged templates: each nested template is uploaded under its own SHA-256 and the master
# template names it by URL, which is what `aws cloudformation package` does for TemplateURL; built
# here so that the upload can name the expected bucket owner (package cannot).
package_templates() {
    PACKAGED="$BUILD_DIR/packaged/master-template.yaml"
    step "build: packaged templates in $BUILD_DIR/packaged"
    rm -rf "$BUILD_DIR/packaged"
    mkdir -p "$BUILD_DIR/packaged"
    "$PY" - "$BUILD_DIR/packaged" "$DEPLOY_BUCKET" "$REGION" "templates/${PROJECT_NAME}/${ENVIRONMENT}" <<'PYEOF'
import hashlib
import pathlib
import re
import shutil
import sys

out, bucket, region, prefix = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
master = pathlib.Path("cfn/master-template.yaml").read_text(encoding="utf-8")
uploads = []


def packaged(match: re.Match[str]) -> str:
    name = match.group(2)
    source = pathlib.Path("cfn") / name
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    key = f"{prefix}/{digest}-{name}"
    shutil.copyfile(source, out / name)
    uploads.append(f"{name} {key}")
    return f"{match.group(1)}https://{bucket}.s3.{region}.{suffix}/{key}"


text = re.sub(r"^(\s+TemplateURL: )([A-Za-z0-9._-]+\.yaml)\s*$", packaged, master, flags=re.M)
if len(text.encode()) > 51200:
    sys.exit("the packaged master template is over CloudFormation's 51,200-byte inline limit")
(out / "master-template.yaml").write_text(text, encoding="utf-8")
(out / "uploads.txt").write_text("\n".join(uploads) + "\n", encoding="utf-8")
print(f"packaged: {len(uploads)} nested templates, master {len(text.encode())} bytes")
PYEOF
}

LAYER_ZIP=""
if [[ -n "$CODE_KEY" ]]; then
    step "build: skipped, deploying the uploaded package s3://$DEPLOY_BUCKET/$CODE_KEY (--code-key)"
    ZIP_PATH=""
else
    mkdir -p "$BUILD_DIR"
    step "build: runtime dependencies (python $LAMBDA_PYTHON_VERSION, manylinux $WHEEL_ARCH)"
    install_runtime_dependencies
    build_package
    build_layer
fi
$LAMBDA_ONLY || package_templates

# ------------------------------------------------------------------------------------------
# 5. AWS: artifact bucket, upload, then either the functions' code or the whole stack.
ensure_bucket() {
    if $DRY_RUN; then
        aws_cmd s3api head-bucket --bucket "$DEPLOY_BUCKET" --expected-bucket-owner "$ACCOUNT_ID"
        return 0
    fi
    if aws s3api head-bucket --bucket "$DEPLOY_BUCKET" --expected-bucket-owner "$ACCOUNT_ID" >/dev/null 2>&1; then
        return 0
    fi
    # CreateBucket has no expected-owner parameter: it fails unless the name is free or already
    # ours (BucketAlreadyOwnedByYou), and every later call checks the owner again.
    echo "deploy: creating artifact bucket $DEPLOY_BUCKET"
    if [[ "$REGION" == "us-east-1" ]]; then
        aws_cmd s3api create-bucket --bucket "$DEPLOY_BUCKET" --region "$REGION"
    else
        aws_cmd s3api create-bucket --bucket "$DEPLOY_BUCKET" --region "$REGION" \
            --create-bucket-configuration "LocationConstraint=$REGION"
    fi
    aws_cmd s3api put-public-access-block --bucket "$DEPLOY_BUCKET" --expected-bucket-owner "$ACCOUNT_ID" \
        --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
    aws_cmd s3api put-bucket-encryption --bucket "$DEPLOY_BUCKET" --expected-bucket-owner "$ACCOUNT_ID" \
        --server-side-encryption-configuration '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
    aws_cmd s3api put-bucket-versioning --bucket "$DEPLOY_BUCKET" --expected-bucket-owner "$ACCOUNT_ID" \
        --versioning-configuration Status=Enabled
}

step "aws: artifact bucket s3://$DEPLOY_BUCKET"
ensure_bucket
if [[ -n "$ZIP_PATH" ]]; then
    aws_cmd s3 cp "$ZIP_PATH" "s3://$DEPLOY_BUCKET/$CODE_KEY" --region "$REGION" \
        --expected-bucket-owner "$ACCOUNT_ID"
fi

# The layer goes out with the code it carries, in a full deploy and with --lambda-only alike: a new
# version each time, whose ARN the orchestration's functions attach (docs/DEPLOY.md).
publish_layer() {
    step "aws: publish the layer $LAYER_NAME"
    aws_cmd s3 cp "$LAYER_ZIP" "s3://$DEPLOY_BUCKET/$LAYER_KEY" --region "$REGION" \
        --expected-bucket-owner "$ACCOUNT_ID"
    local publish=(lambda publish-layer-version --region "$REGION" --layer-name "$LAYER_NAME"
        --description "recovery_instance_sync ${LAYER_SHA256:0:12} ($ENVIRONMENT)"
        --content "S3Bucket=$DEPLOY_BUCKET,S3Key=$LAYER_KEY"
        --compatible-runtimes "python$LAMBDA_PYTHON_VERSION" --compatible-architectures "$LAMBDA_ARCH"
        --query LayerVersionArn --output text)
    if $DRY_RUN; then
        aws_cmd "${publish[@]}"
        echo "deploy: layer: a real run publishes $LAYER_ZIP and prints its version ARN"
    else
        LAYER_VERSION_ARN="$(aws "${publish[@]}")"
        echo "deploy: layer version ARN: $LAYER_VERSION_ARN"
    fi
}
if [[ -n "$LAYER_ZIP" ]]; then
    publish_layer
else
    echo "deploy: layer: not built with --code-key; attach an earlier version of $LAYER_NAME to roll it back"
fi

if $LAMBDA_ONLY; then
    step "aws: update the functions' code (--lambda-only)"
    for output_key in DataManagementFunctionName ExecutionFunctionName QueryFunctionName RefreshFunctionName; do
        if $DRY_RUN; then
            aws_cmd cloudformation describe-stacks --stack-name "$STACK_NAME" --region "$REGION" \
                --query "Stacks[0].Outputs[?OutputKey=='$output_key'].OutputValue" --output text
            case "$output_key" in
                DataManagementFunctionName) function_name="${PROJECT_NAME}-data-management-${ENVIRONMENT}" ;;
                ExecutionFunctionName) function_name="${PROJECT_NAME}-execution-${ENVIRONMENT}" ;;
                QueryFunctionName) function_name="${PROJECT_NAME}-query-${ENVIRONMENT}" ;;
                RefreshFunctionName) function_name="${PROJECT_NAME}-refresh-${ENVIRONMENT}" ;;
            esac
        else
            function_name="$(aws cloudformation describe-stacks --stack-name "$STACK_NAME" --region "$REGION" \
                --query "Stacks[0].Outputs[?OutputKey=='$output_key'].OutputValue" --output text 2>/dev/null || true)"
            [[ -n "$function_name" && "$function_name" != "None" ]] \
                || die "stack $STACK_NAME has no output $output_key: deploy the whole stack once first (without --lambda-only)"
        fi
        aws_cmd lambda update-function-code --function-name "$function_name" --region "$REGION" \
            --s3-bucket "$DEPLOY_BUCKET" --s3-key "$CODE_KEY" --architectures "$LAMBDA_ARCH" --publish \
            --query '{function: FunctionName, version: Version, sha256: CodeSha256}' --output text
        aws_cmd lambda wait function-updated --function-name "$function_name" --region "$REGION"
    done
    echo
    echo "deploy: function code updated to s3://$DEPLOY_BUCKET/$CODE_KEY."
    echo "deploy: the stack's LambdaCodeS3Key parameter still names the previous package until the next full deploy."
else
    step "aws: upload the nested templates and deploy $STACK_NAME"
    while read -r template key; do
        aws_cmd s3 cp "$BUILD_DIR/packaged/$template" "s3://$DEPLOY_BUCKET/$key" --region "$REGION" \
            --expected-bucket-owner "$ACCOUNT_ID"
    done < "$BUILD_DIR/packaged/uploads.txt"

    params=(
        "ProjectName=$PROJECT_NAME"
        "Environment=$ENVIRONMENT"
        "LambdaCodeS3Bucket=$DEPLOY_BUCKET"
        "LambdaCodeS3Key=$CODE_KEY"
        "LambdaArchitecture=$LAMBDA_ARCH"
    )
    [[ -n "${NOTIFICATION_EMAIL:-}" ]] && params+=("NotificationEmail=$NOTIFICATION_EMAIL")
    [[ -n "${API_AUTH_TYPE:-}" ]] && params+=("ApiAuthType=$API_AUTH_TYPE")
    [[ -n "${COGNITO_USER_POOL_ARN:-}" ]] && params+=("CognitoUserPoolArn=$COGNITO_USER_POOL_ARN")
    [[ -n "${CORS_ALLOW_ORIGIN:-}" ]] && params+=("CorsAllowOrigin=$CORS_ALLOW_ORIGIN")
    params+=("${EXTRA_PARAMS[@]+"${EXTRA_PARAMS[@]}"}")

    # Parameters not named here keep their current values on an update (the template's
    # defaults on the first deploy).
    aws_cmd cloudformation deploy --region "$REGION" \
        --template-file "$PACKAGED" \
        --stack-name "$STACK_NAME" \
        --capabilities CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
        --no-fail-on-empty-changeset \
        --parameter-overrides "${params[@]}" \
        --tags "Project=$PROJECT_NAME" "Environment=$ENVIRONMENT"
    # Routes attached to an existing REST API go live with a new deployment of its stage (the
    # API's owner would otherwise publish them with its next deployment).
    existing_api="" existing_stage=""
    for param in "${params[@]}"; do
        case "$param" in
            ExistingRestApiId=*) existing_api="${param#*=}" ;;
            ExistingApiStageName=*) existing_stage="${param#*=}" ;;
        esac
    done
    if [[ -n "$existing_api" && -n "$existing_stage" ]]; then
        aws_cmd apigateway create-deployment --rest-api-id "$existing_api" --stage-name "$existing_stage" \
            --region "$REGION" --description "recovery instance sync routes ($ENVIRONMENT)"
    fi
    aws_cmd cloudformation describe-stacks --stack-name "$STACK_NAME" --region "$REGION" \
        --query 'Stacks[0].Outputs' --output table
fi

echo
if $DRY_RUN; then
    echo "deploy: dry run complete${ZIP_PATH:+; package $ZIP_PATH}${LAYER_ZIP:+; layer $LAYER_ZIP}"
else
    echo "deploy: done"
fi
