"""Business rules of Clients & Cars. Nothing here imports aiogram."""
