"""People in the loop, through Label Studio: clips out as tasks, annotations back as labels.

- :mod:`~convoice.review.layout`: which clips need a person, the labeling
  interface and one task per clip (pure).
- :mod:`~convoice.review.build`: the tasks of clip rows, their audio written.
- :mod:`~convoice.review.audio`: the review audio, and how Label Studio reaches
  it (local files or S3).
- :mod:`~convoice.review.client`: the Label Studio API, every call retried.
- :mod:`~convoice.review.annotations`: an annotation parsed into a decision,
  a decision into label rows (pure).
- :mod:`~convoice.review.decisions`: what decisions do to the labels and the
  speaker registry (pure).
- :mod:`~convoice.review.server`: the local Label Studio (install, start, stop).
- :mod:`~convoice.review.webhook`: the receiver of Label Studio's events.

The flows are in :mod:`convoice.flows.review`, the commands in
:mod:`convoice.cli.review`, the pull's own tables in
:mod:`convoice.storage.review_state`.
"""
