"""The CardiacCase node: one per study, pointing at every module's inputs and outputs.

It is a ``vtkMRMLScriptedModuleNode`` (as SlicerHeart's HeartValve node) whose node references name each
input and result, so it is saved with the scene and modules find each other's data without importing each
other. Scalar facts about the study (patient, heart rate, method choices) are stored as JSON parameters.
"""

from __future__ import annotations

import json
from typing import Any

import slicer

from .vocabulary import CASE_MODULE_NAME as MODULE_NAME
from .vocabulary import MODULE_NAME_ATTRIBUTE, Attribute, Key, Role

__all__ = ["MODULE_NAME", "Attribute", "CardiacCase", "Key", "Role"]


class CardiacCase:
    """A thin, typed view over the case node; all state lives in the node so it survives save and reload."""

    def __init__(self, node: slicer.vtkMRMLScriptedModuleNode):
        if node.GetAttribute(MODULE_NAME_ATTRIBUTE) != MODULE_NAME:
            raise ValueError(f"node '{node.GetName()}' is not a CardiacCase node")
        self.node = node

    @classmethod
    def create(cls, scene, name: str, study_uid: str = "", patient_id: str = "") -> CardiacCase:
        node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", name)
        node.SetAttribute(MODULE_NAME_ATTRIBUTE, MODULE_NAME)
        node.SetParameter(Key.STUDY_INSTANCE_UID, study_uid)
        node.SetParameter(Key.PATIENT_ID, patient_id)
        return cls(node)

    @classmethod
    def all(cls, scene) -> list[CardiacCase]:
        nodes = scene.GetNodesByClass("vtkMRMLScriptedModuleNode")
        found = []
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            if node.GetAttribute(MODULE_NAME_ATTRIBUTE) == MODULE_NAME:
                found.append(cls(node))
        return found

    @classmethod
    def first(cls, scene) -> CardiacCase | None:
        """The scene's first study, the one a module shows before the user picks one."""
        cases = cls.all(scene)
        return cases[0] if cases else None

    @classmethod
    def get_or_create(cls, scene, name: str, study_uid: str = "", patient_id: str = "") -> CardiacCase:
        """The case of this study if the scene has one (matched by study UID when known), else a new one."""
        for case in cls.all(scene):
            if study_uid and case.study_uid == study_uid:
                return case
            if not study_uid and case.node.GetName() == name:
                return case
        return cls.create(scene, name, study_uid, patient_id)

    @property
    def study_uid(self) -> str:
        return self.node.GetParameter(Key.STUDY_INSTANCE_UID) or ""

    @property
    def patient_id(self) -> str:
        return self.node.GetParameter(Key.PATIENT_ID) or ""

    def set_reference(self, role: str, node) -> None:
        self.node.SetNodeReferenceID(role, node.GetID() if node is not None else None)

    def reference(self, role: str):
        return self.node.GetNodeReference(role)

    def add_reference(self, role: str, node) -> None:
        """One more node under a role that holds several (one per algorithm, per traced curve)."""
        self.node.AddNodeReferenceID(role, node.GetID())

    def references(self, role: str) -> list:
        """Every node under a role, in the order they were added."""
        count = self.node.GetNumberOfNodeReferences(role)
        return [self.node.GetNthNodeReference(role, index) for index in range(count)]

    def clear_references(self, role: str) -> None:
        self.node.RemoveNodeReferenceIDs(role)

    def contents(self) -> list[tuple[str, str]]:
        """(role, node name) of every node the study references now, in the order the roles were set."""
        found = []
        for index in range(self.node.GetNumberOfNodeReferenceRoles()):
            role = self.node.GetNthNodeReferenceRole(index)
            for reference in range(self.node.GetNumberOfNodeReferences(role)):
                node = self.node.GetNthNodeReference(role, reference)
                if node is not None:
                    found.append((role, node.GetName()))
        return found

    def set_value(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value (method choices, summary results) in the node."""
        self.node.SetParameter(key, json.dumps(value))

    def value(self, key: str, default: Any = None) -> Any:
        text = self.node.GetParameter(key)
        return json.loads(text) if text else default
