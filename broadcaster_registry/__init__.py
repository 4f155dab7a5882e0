"""The broadcasters (transcoding nodes): model, validation, origins, liveness, ranking (with the
nearby index that shortlists for it), reservations, credentials, the stored form (codec) and
storage (the interface, its error and the in-memory registry every embedded backend shares).

Pure decisions over plain values; time, randomness and storage are passed in. Depends on geo only.
"""
