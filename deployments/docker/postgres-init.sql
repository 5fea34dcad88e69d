-- Run by the postgres image on its first start (deployments/compose.yaml):
-- Label Studio's database next to Prefect's, owned by the same user.
CREATE DATABASE labelstudio OWNER convoice;
