"""template.yaml as SAM deploys it, offline: run by .venv-sam's Python (SAM's translator pins a
pydantic older than the layer's, so it is not in the dev venv). Prints the translated Resources
as JSON. Usage: .venv-sam/bin/python tests/sam_transform.py '{"Parameter": "value"}' [template]"""

import copy
import json
import sys
from pathlib import Path

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.template import load_yaml  # noqa: E402 - after the path is set

POLICIES = {
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}


def main() -> None:
    parameters = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    template_path = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "template.yaml"
    template = copy.deepcopy(load_yaml(template_path))
    # Code locations as `sam package` writes them
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/code.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
    values = {
        "AWS::Region": "ap-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::StackName": "qpay-payments-dev",
        **parameters,
    }
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name="ap-east-1"),
    )
    translated = translator.translate(
        sam_template=template, parameter_values=values, get_managed_policy_map=lambda: POLICIES
    )
    json.dump(translated["Resources"], sys.stdout)


if __name__ == "__main__":
    main()
