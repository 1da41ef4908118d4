"""Call a SageMaker endpoint once, as a user's own code would, and say what answered.

    python scripts/invoke-endpoint.py demo-embedder "first sentence" "second sentence"

`make demo` runs it after the release so the demo ends on a live endpoint answering.
"""

from __future__ import annotations

import json
import sys

import boto3


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, texts = argv[0], argv[1:]
    response = boto3.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint,
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps({"inputs": texts}),
    )
    vectors = json.loads(response["Body"].read())
    dims = {len(v) for v in vectors}
    print(
        f"{endpoint} (variant {response['InvokedProductionVariant']}) answered: "
        f"{len(vectors)} embeddings of {'/'.join(map(str, sorted(dims)))} dimensions",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
