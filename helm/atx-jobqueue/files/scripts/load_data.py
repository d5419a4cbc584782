"""Fill the data volume for the workers: copy the sample shipped in the image, or download the
portal export. Writes to a temporary name and renames, so a worker never sees half a file; keeps
an existing dataset unless LOADER_FORCE=1. Runs in the API image (python + requests)."""

import os
import shutil
import sys
import tempfile

target = os.environ["DATA_PATH"]
source = os.environ.get("LOADER_SOURCE", "sample")
force = os.environ.get("LOADER_FORCE", "0") == "1"

if os.path.isfile(target) and os.path.getsize(target) > 0 and not force:
    print(f"loader: {target} already holds {os.path.getsize(target)} bytes; keeping it", flush=True)
    sys.exit(0)

os.makedirs(os.path.dirname(target), exist_ok=True)
fd, partial = tempfile.mkstemp(prefix=".loading-", dir=os.path.dirname(target))
try:
    with os.fdopen(fd, "wb") as out:
        if source == "sample":
            with open(os.environ["LOADER_SAMPLE_PATH"], "rb") as src:
                shutil.copyfileobj(src, out)
        elif source == "url":
            import requests

            url = os.environ["LOADER_URL"]
            print(f"loader: downloading {url}", flush=True)
            with requests.get(url, stream=True, timeout=(10, 120)) as response:
                response.raise_for_status()
                for chunk in response.iter_content(chunk_size=1 << 20):
                    out.write(chunk)
        else:
            sys.exit(f"loader: unknown LOADER_SOURCE {source!r} (sample or url)")
    if os.path.getsize(partial) == 0:
        sys.exit("loader: the source was empty")
    try:
        # check it parses as a traffic incident file before the workers see it
        from atx_analysis.dataset import load_dataset
    except ImportError:
        load_dataset = None
    if load_dataset is not None:
        print(f"loader: {load_dataset(partial).info()}", flush=True)
    os.chmod(partial, 0o644)
    os.replace(partial, target)
    print(f"loader: wrote {target} ({os.path.getsize(target)} bytes)", flush=True)
finally:
    if os.path.exists(partial):
        os.unlink(partial)
