"""The voice bank web service (``convoice serve``): an interface over releases and synthesisers."""
