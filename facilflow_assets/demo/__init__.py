"""`make demo`: the lifecycle of every use case of the default tenant, run on the embedded
defaults, and one use case walked through approval, serving and monitoring."""
