"""The CLI's options for Rekognition parameters come from botocore's model (interfaces/cli/options.py):
names, help, allowed values and checks, with the earlier option names kept as aliases."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from faceledger.interfaces.cli.common import EXIT_INPUT
from faceledger.interfaces.cli.main import app
from faceledger.interfaces.cli.options import member_option
from faceledger.service import api_model, surface

runner = CliRunner()

#: Every option name users had before the options were derived: each still works.
EARLIER = {
    ("compare",): {"--threshold", "--max-fmr", "--quality-filter"},
    ("search",): {"--max-faces", "--threshold", "--max-fmr", "--quality-filter"},
    ("index",): {"--max-faces", "--quality-filter"},
    ("faces", "list"): {"--max-results", "--next-token", "--user-id"},
    ("users", "list"): {"--next-token"},
    ("users", "associate"): {"--threshold"},
    ("users", "search"): {"--user-id", "--face-id", "--threshold", "--max-fmr", "--max-users"},
    ("collection", "create"): {"--store-images", "--model"},
}


def test_earlier_option_names_still_work_beside_the_derived_ones():
    root = typer.main.get_command(app)
    for path, names in EARLIER.items():
        command = root
        for part in path:
            command = command.commands[part]
        opts = {o for p in command.params for o in p.opts}
        assert names <= opts, (path, names - opts)
    compare = {o for p in root.commands["compare"].params for o in p.opts}
    assert {"--similarity-threshold", "--max-false-match-rate"} <= compare  # the members' own names, from the model


def test_an_enum_from_the_model_is_accepted_and_a_wrong_value_refused_with_its_choices(lfw):
    """QualityFilter's values are botocore's; the CLI holds no list of them."""
    image = str(lfw.image("Colin_Powell", 1))
    r = runner.invoke(app, ["compare", "--quality-filter", "BEST", image, image])
    assert r.exit_code == EXIT_INPUT, r.output
    assert all(level in r.stderr for level in api_model.enum("QualityFilter")), r.stderr
    accepted = api_model.enum("QualityFilter")[2]  # LOW
    r = runner.invoke(app, ["compare", "--json", "--quality-filter", accepted, "--similarity-threshold", "0", image, image])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["SimilarityThreshold"] == 0


def test_ranges_come_from_the_model():
    """ListFaces' MaxResults is 0-4096 in the model: 4097 is bad input (exit 3) before any work;
    the help states the model's range and documentation."""
    r = runner.invoke(app, ["faces", "list", "anything", "--max-results", "4097"])
    assert r.exit_code == EXIT_INPUT and "between 0 and 4096" in " ".join(r.stderr.split()), r.output
    shape = surface.input_shape("ListFaces").members["MaxResults"]
    option = member_option("ListFaces", "MaxResults")
    assert option.help.startswith(surface.documentation(shape, first_sentence=True))
    assert f"{shape.metadata['min']} to {shape.metadata['max']}" in option.help
    assert option.parser("17") == 17
