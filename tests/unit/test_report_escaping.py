"""report.escaping: names quoted by alerts are literal text in Slack mrkdwn, HTML mail bodies and mail headers."""

from __future__ import annotations

from airflow_provider_openai_usage.report.escaping import header_text, html_text, mail_text, plain_escape_for, slack_text, template_fields


def test_slack_text_escapes_control_characters_and_neutralises_broadcast_mentions():
    assert slack_text("<!channel> <http://x|y> & @channel @Here @everyone") == (
        "&lt;!channel&gt; &lt;http://x|y&gt; &amp; @\u200bchannel @\u200bHere @\u200beveryone"
    )


def test_html_and_header_text():
    assert html_text('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"
    assert header_text("a\r\nBcc: x\u2028y\x00") == "a Bcc: x y "
    assert mail_text("<b>\r\n") == "&lt;b&gt; "


def test_templates_get_every_variant_and_notifiers_we_know_are_safe_by_default():
    class SlackWebhookNotifier:  # the class name is what plain_escape_for reads
        pass

    class SmtpNotifier:
        subject = "s"

    fields = template_fields({"project": "<x>", "amount": None}, plain_escape_for(SlackWebhookNotifier()))
    assert fields["project"] == "&lt;x&gt;" and fields["amount"] is None
    assert fields["html"]["project"] == "&lt;x&gt;" and fields["header"]["project"] == "<x>" and fields["slack"]["project"] == "&lt;x&gt;"
    assert template_fields({"p": "a\nb<"}, plain_escape_for(SmtpNotifier()))["p"] == "a b&lt;"
    assert plain_escape_for(object()) is None
