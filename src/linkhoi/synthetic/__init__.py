"""The synthetic world's vision-language side: caption corpus, VLM pretraining, shipped VLM."""
