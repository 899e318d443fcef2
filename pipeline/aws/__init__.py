"""AWS clients pointed at LocalStack, and provisioning of what the AWS account would hold.

Stands in for the account itself: S3 buckets (bronze, silver, artifacts) and the Secrets
Manager secrets in RDS's JSON format, from which every component reads its credentials.
"""
