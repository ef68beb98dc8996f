"""How a brief becomes the text a causal LM is prompted with. One format everywhere: SFT, DPO, RL and sampling."""

from __future__ import annotations

TASK_LABELS = {
    "ad_copy": "ad copy",
    "meta_description": "meta description for a local landing page",
    "social_post": "social media post",
    "email_subject": "email subject line",
}


def format_prompt(region_name: str, locale: str, task_type: str, brief: str) -> str:
    """The model input for one brief; the completion follows directly after it.

    Example:
        >>> format_prompt("Manchester", "en-GB", "email_subject", "Autumn menu launch")
        'Region: Manchester (en-GB)\\nTask: email subject line\\nBrief: Autumn menu launch\\nCopy:\\n'
    """
    return f"Region: {region_name} ({locale})\nTask: {TASK_LABELS[task_type]}\nBrief: {brief.strip()}\nCopy:\n"
