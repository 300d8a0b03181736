from rest_framework import serializers

from apps.audit.models import AuditEvent


class AuditActorSerializer(serializers.Serializer):
    type = serializers.CharField(source="actor_type")
    label = serializers.CharField(source="actor_label")
    user_id = serializers.IntegerField(source="actor_user_id", allow_null=True)
    token_id = serializers.IntegerField(source="actor_token_id", allow_null=True)
    token_prefix = serializers.CharField(source="actor_token_prefix")


class AuditTargetSerializer(serializers.Serializer):
    type = serializers.CharField(source="target_type")
    id = serializers.CharField(source="target_id")
    label = serializers.CharField(source="target_label")


class AuditEventSerializer(serializers.ModelSerializer):
    actor = AuditActorSerializer(source="*", read_only=True)
    target = AuditTargetSerializer(source="*", read_only=True)
    changes = serializers.DictField(
        child=serializers.ListField(allow_null=True), help_text="{field: [before, after]}, secrets masked"
    )

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "action", "actor", "ip_address", "user_agent", "target", "changes"]
        read_only_fields = fields
