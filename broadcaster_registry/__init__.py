"""The broadcasters (transcoding nodes): model, validation, liveness, ranking and storage.

Pure decisions over plain values; time, randomness and storage are passed in. Depends on geo only.
"""
