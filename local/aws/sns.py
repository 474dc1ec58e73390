"""SNS delivery: a published message fanned out to the topic's subscribers in moto.

Lambda subscribers get the SNS event record (an asynchronous invocation), SQS subscribers the SNS envelope
(SendMessage through moto), as SNS delivers them.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from local.aws.lambda_runtime import LambdaRuntime
from local.aws.moto_server import Aws


class SnsDelivery:
    """SNS fan-out of one published message to the topic's subscribers."""

    def __init__(self, aws: Aws, runtime: LambdaRuntime) -> None:
        self._sns = aws.client("sns")
        self._sqs = aws.client("sqs")
        self._runtime = runtime
        self.published: list[tuple[str, str, str]] = []

    def publish(self, topic_arn: str, subject: str, message: str) -> None:
        self.published.append((topic_arn, subject, message))
        message_id = str(uuid.uuid4())
        timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        subs = self._sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
        for sub in subs:
            envelope = {
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": topic_arn,
                "Subject": subject,
                "Message": message,
                "Timestamp": timestamp,
                "SignatureVersion": "1",
                "Signature": "EXAMPLE",
                "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-EXAMPLE.pem",
                "UnsubscribeUrl": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={sub['SubscriptionArn']}",
                "MessageAttributes": {},
            }
            if sub["Protocol"] == "lambda":
                event = {
                    "Records": [
                        {
                            "EventSource": "aws:sns",
                            "EventVersion": "1.0",
                            "EventSubscriptionArn": sub["SubscriptionArn"],
                            "Sns": envelope,
                        }
                    ]
                }
                self._runtime.invoke_async(
                    sub["Endpoint"], event, source=f"sns:{topic_arn.rsplit(':', 1)[1]}"
                )
            elif sub["Protocol"] == "sqs":
                name = sub["Endpoint"].rsplit(":", 1)[1]
                url = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
                self._sqs.send_message(QueueUrl=url, MessageBody=json.dumps(envelope))
