"""The AWS side of Phoenix Pipeline on one machine: one module per AWS service the stand-in replaces.

moto_server (the AWS API for what moto implements), cloudformation (stack creation), codedeploy (the API and
the ECS blue/green engine), elbv2 (the ALB data plane), ecs (tasks), lambda_runtime (and its worker,
lambda_bootstrap), events (EventBridge schedules), sns (delivery), cloudwatch (alarm evaluation), images and
docker_cli (the container runtime without a Docker engine: docker login, build and push; ECR's blobs; pulls).
local/README.md has the table and each one's deliberate differences from AWS.
"""
