"""Render a CloudFormation template for given parameter values, as CloudFormation would.

Enough of CloudFormation's evaluation for the tests to see what a deployment gets: conditions
(``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``), resources and outputs
dropped by their ``Condition``, ``Fn::If`` (with ``AWS::NoValue`` removing the property or list
item), ``Ref`` to parameters and pseudo parameters, ``Fn::Sub`` of those, ``Fn::Split`` and
``Fn::Select``, ``Fn::FindInMap``. A ``Ref`` or ``Fn::GetAtt`` of a resource stays symbolic (``<Ref X>``,
``<GetAtt X.Arn>``), as its value exists only once deployed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "111111111111",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "stack",
}
_REMOVED = object()
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


class Renderer:
    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        self.template = template
        declared = template.get("Parameters") or {}
        unknown = set(parameters) - set(declared)
        if unknown:
            raise KeyError(f"not parameters of the template: {sorted(unknown)}")
        self.values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in parameters:
                self.values[name] = parameters[name]
            elif "Default" in spec:
                self.values[name] = spec["Default"]
            else:
                raise KeyError(f"parameter {name} has no default and no value")
        self.conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = self._truth(self.template["Conditions"][name])
        return self.conditions[name]

    def _truth(self, node: Any) -> bool:
        if isinstance(node, bool):
            return node
        ((function, argument),) = node.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.value(item) for item in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(item) for item in argument)
        if function == "Fn::Or":
            return any(self._truth(item) for item in argument)
        raise ValueError(f"unsupported condition function {function}")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _REMOVED
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.values:
            return self.values[name]
        return f"<Ref {name}>"

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {key: self.value(value) for key, value in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return f"<GetAtt {name}>"
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)

    def value(self, node: Any) -> Any:
        """``node`` with every intrinsic evaluated; removed values come back as _REMOVED."""
        if isinstance(node, list):
            return [item for item in (self.value(item) for item in node) if item is not _REMOVED]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::If":
                name, when_true, when_false = argument
                return self.value(when_true if self.condition(name) else when_false)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::GetAtt":
                target = argument if isinstance(argument, str) else ".".join(argument)
                return f"<GetAtt {target}>"
            if key == "Fn::Split":
                separator, text = argument
                return str(self.value(text)).split(separator)
            if key == "Fn::Select":
                index, items = argument
                return self.value(items)[int(self.value(index))]
            if key == "Fn::FindInMap":
                mapping, top, second = (self.value(item) for item in argument)
                return self.template["Mappings"][mapping][str(top)][str(second)]
        rendered = {key: self.value(value) for key, value in node.items()}
        return {key: value for key, value in rendered.items() if value is not _REMOVED}

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources this deployment creates, intrinsics evaluated."""
        kept = {}
        for logical_id, resource in (self.template.get("Resources") or {}).items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            kept[logical_id] = self.value({k: v for k, v in resource.items() if k != "Condition"})
        return kept

    def outputs(self) -> dict[str, Any]:
        kept = {}
        for name, output in (self.template.get("Outputs") or {}).items():
            if "Condition" in output and not self.condition(output["Condition"]):
                continue
            kept[name] = self.value(output["Value"])
        return kept


def render(template: Mapping[str, Any], parameters: Mapping[str, str]) -> Renderer:
    return Renderer(template, parameters)
