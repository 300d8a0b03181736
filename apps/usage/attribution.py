"""Pure attribution rules: provider project / workspace / API key id, or a tag value -> team id."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    kind: str  # project_id | workspace_id | api_key_id | tag
    tag_key: str
    value: str
    team_id: int


def resolve_team(
    rules: list[Rule], *, project_id=None, workspace_id=None, api_key_id=None, tags: dict
) -> int | None:
    """First matching rule (rules come ordered by priority) wins."""
    ids = {"project_id": project_id, "workspace_id": workspace_id, "api_key_id": api_key_id}
    for rule in rules:
        if rule.kind == "tag":
            if tags.get(rule.tag_key) == rule.value:
                return rule.team_id
        elif ids.get(rule.kind) == rule.value:
            return rule.team_id
    return None
