"""The search: the space, the engine-neutral trial runner, and the engines that choose trials."""
