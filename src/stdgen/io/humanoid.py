"""The VRM humanoid bone set: names, the standard hierarchy, and the 0.x -> 1.0 renames."""

from __future__ import annotations

from stdgen.structures.character import HUMANOID_BONES, HUMANOID_PARENTS


def _fingers(side: str) -> dict[str, str]:
    hand = f"{side}Hand"
    out = {f"{side}ThumbMetacarpal": hand, f"{side}ThumbProximal": f"{side}ThumbMetacarpal",
           f"{side}ThumbDistal": f"{side}ThumbProximal"}
    for finger in ("Index", "Middle", "Ring", "Little"):
        out[f"{side}{finger}Proximal"] = hand
        out[f"{side}{finger}Intermediate"] = f"{side}{finger}Proximal"
        out[f"{side}{finger}Distal"] = f"{side}{finger}Intermediate"
    return out


#: Every VRM 1.0 humanoid bone with its parent in the standard hierarchy, parent before child:
#: the project's bones (``HUMANOID_BONES``) first, then eyes, jaw and fingers.
VRM_BONE_PARENTS: dict[str, str | None] = {
    **{b: HUMANOID_PARENTS[b] for b in HUMANOID_BONES},
    "leftEye": "head", "rightEye": "head", "jaw": "head",
    **_fingers("left"), **_fingers("right"),
}  # fmt: skip
VRM_BONES: tuple[str, ...] = tuple(VRM_BONE_PARENTS)

#: Bones a VRM 1.0 file must map (the specification's required set).
VRM_REQUIRED_BONES: tuple[str, ...] = (
    "hips", "spine", "head",
    "leftUpperArm", "leftLowerArm", "leftHand", "rightUpperArm", "rightLowerArm", "rightHand",
    "leftUpperLeg", "leftLowerLeg", "leftFoot", "rightUpperLeg", "rightLowerLeg", "rightFoot",
)  # fmt: skip

#: VRM 0.x names that differ in 1.0 (the thumb moved one joint down the chain).
VRM0_TO_VRM1: dict[str, str] = {
    f"{s}Thumb{a}": f"{s}Thumb{b}"
    for s in ("left", "right")
    for a, b in (("Proximal", "Metacarpal"), ("Intermediate", "Proximal"), ("Distal", "Distal"))
}
VRM1_TO_VRM0: dict[str, str] = {v: k for k, v in VRM0_TO_VRM1.items()}
