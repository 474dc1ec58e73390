"""The offline stand-in for the AWS side of Phoenix Pipeline (local/aws) and the drill (local/drill)."""
