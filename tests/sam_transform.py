"""template.yaml as SAM deploys it, offline: run by .venv-sam's Python (SAM's translator pins a
pydantic older than the layer's, so it is not in the dev venv). Prints the translated Resources
as JSON. Usage: .venv-sam/bin/python tests/sam_transform.py '{"Parameter": "value"}' [template] [--loops-only]

CloudFormation runs the template's transforms in order: AWS::LanguageExtensions first (its
Fn::ForEach loops), then SAM's. Offline, the loops are expanded by SAM CLI's own implementation
of that transform (samcli.lib.cfn_language_extensions, the one `sam build` uses), not by the
local stack's reader, so the tests can compare the two. `--loops-only` prints the template
after that first step (the input of SAM's translator)."""

import copy
import json
import sys
from pathlib import Path

import boto3
from samcli.lib.cfn_language_extensions.models import ResolutionMode, TemplateProcessingContext
from samcli.lib.cfn_language_extensions.pipeline import ProcessingPipeline
from samcli.lib.cfn_language_extensions.processors import ForEachProcessor, TemplateParsingProcessor
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


def expand_loops(template: dict, parameters: dict) -> dict:
    """Only the Fn::ForEach expansion: SAM CLI's full pipeline would also resolve every Fn::Sub
    it can, which CloudFormation leaves for deploy time."""
    context = TemplateProcessingContext(
        fragment=copy.deepcopy(template), parameter_values=parameters, resolution_mode=ResolutionMode.PARTIAL
    )
    return ProcessingPipeline([TemplateParsingProcessor(), ForEachProcessor()]).process_template(context)


def main() -> None:
    parameters = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    paths = [argument for argument in sys.argv[2:] if not argument.startswith("--")]
    template_path = Path(paths[0]) if paths else ROOT / "template.yaml"
    template = expand_loops(load_yaml(template_path, expand=False), parameters)
    if "--loops-only" in sys.argv:
        json.dump(template, sys.stdout)
        return
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
