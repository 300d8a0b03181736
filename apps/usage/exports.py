"""Streamed CSV exports: spend groups, raw ledger rows, and the ledger in the FinOps FOCUS 1.0 format."""

import csv
import json
from datetime import timedelta

from django.http import StreamingHttpResponse

from apps.usage.models import TOKEN_FIELDS


class _Echo:
    def write(self, value):
        return value


def stream_csv(filename: str, header: list[str], rows) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def generate():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(generate(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def spend_csv(result: dict, group_by: tuple[str, ...], filename: str) -> StreamingHttpResponse:
    dims = [("team" if g == "team" else g) for g in group_by]
    header = [*dims, "cost", "currency", "requests", "input_tokens", *TOKEN_FIELDS, "unpriced_requests"]
    rows = (
        [
            *(g.get(d) if g.get(d) is not None else "" for d in dims),
            g["cost"],
            "USD",
            g["requests"],
            g["input_tokens"],
            *(g[t] for t in TOKEN_FIELDS),
            g["unpriced_requests"],
        ]
        for g in result["groups"]
    )
    return stream_csv(filename, header, rows)


RECORD_HEADER = [
    "id",
    "source",
    "start_time",
    "day",
    "bucket_seconds",
    "provider",
    "model",
    "model_raw",
    "team_id",
    "project_id",
    "workspace_id",
    "api_key_id",
    "feature",
    "task_id",
    "customer",
    "end_user",
    "environment",
    "service_tier",
    "requests",
    "input_tokens",
    *TOKEN_FIELDS,
    "cost",
    "currency",
    "cost_basis",
    "computed_cost",
    "reported_cost",
    "tags",
]


def records_csv(queryset, filename: str) -> StreamingHttpResponse:
    def rows():
        for r in queryset.iterator(chunk_size=2000):
            yield [
                r.key if r.source == "event" else r.pk,
                r.source,
                r.start_time.isoformat(),
                r.day.isoformat(),
                r.bucket_seconds,
                r.provider,
                r.model,
                r.model_raw,
                r.team_id or "",
                r.project_id or "",
                r.workspace_id or "",
                r.api_key_id or "",
                r.feature,
                r.task_id,
                r.customer,
                r.end_user,
                r.environment,
                r.service_tier,
                r.requests,
                r.input_tokens,
                *(getattr(r, t) for t in TOKEN_FIELDS),
                r.cost,
                r.currency,
                r.cost_basis,
                "" if r.computed_cost is None else r.computed_cost,
                "" if r.reported_cost is None else r.reported_cost,
                json.dumps(r.tags, sort_keys=True),
            ]

    return stream_csv(filename, RECORD_HEADER, rows())


# FOCUS 1.0 columns (FinOps Open Cost and Usage Specification), then x_ custom columns for token classes.
FOCUS_HEADER = [
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_SpendctlRecordId",
    "x_CostBasis",
    "x_Team",
    "x_Feature",
    "x_Customer",
    "x_Requests",
    "x_InputTokens",
    "x_CacheReadTokens",
    "x_CacheWriteTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_ServiceTier",
]
PROVIDER_NAMES = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "openrouter": "OpenRouter",
    "google": "Google",
    "mistral": "Mistral AI",
    "deepseek": "DeepSeek",
    "sandbox": "Sandbox",
}


def focus_csv(queryset, org, team_names: dict, filename: str) -> StreamingHttpResponse:
    def rows():
        for r in queryset.iterator(chunk_size=2000):
            start = r.start_time
            end = start + timedelta(seconds=r.bucket_seconds or 0)
            period_start = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            period_end = (period_start + timedelta(days=32)).replace(day=1)
            provider = PROVIDER_NAMES.get(r.provider, r.provider)
            tokens = r.input_tokens + r.output_tokens
            list_cost = r.computed_cost if r.computed_cost is not None else r.cost
            tags = {
                **r.tags,
                **{
                    k: getattr(r, k)
                    for k in ("feature", "task_id", "customer", "end_user", "environment")
                    if getattr(r, k)
                },
            }
            team = team_names.get(r.team_id, "") if r.team_id else ""
            if team:
                tags["team"] = team
            yield [
                "",
                r.cost,
                org.slug,
                org.name,
                r.currency,
                period_end.isoformat(),
                period_start.isoformat(),
                "Usage",
                "",
                f"{provider} {r.model} ({r.service_tier}), {r.requests} request(s)",
                "Usage-Based",
                end.isoformat(),
                start.isoformat(),
                "",
                "",
                "",
                "",
                "",
                tokens,
                "Tokens",
                r.cost,
                "",
                r.cost,
                provider,
                list_cost,
                "",
                "Standard",
                tokens,
                "Tokens",
                provider,
                provider,
                "",
                "",
                r.api_key_id or r.project_id or "",
                r.model,
                "Model",
                "AI and Machine Learning",
                f"{provider} {r.model}",
                f"{r.provider}/{r.model}",
                "",
                r.workspace_id or r.project_id or "",
                "",
                json.dumps(tags, sort_keys=True),
                r.pk,
                r.cost_basis,
                team,
                r.feature,
                r.customer,
                r.requests,
                r.input_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.output_tokens,
                r.reasoning_tokens,
                r.service_tier,
            ]

    return stream_csv(filename, FOCUS_HEADER, rows())
